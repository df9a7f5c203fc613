"""``shelfscan-agent classify``: label image files, or evaluate a folder-per-class tree.

Exit status: 0 when every file was classified, 1 when some were skipped (each named on
stderr), 2 for unusable arguments or a bad model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.errors import ShelfscanError

_HELP = "classify image files or folders; a folder-per-class tree also gets accuracy figures"
_DESCRIPTION = (
    "Classify images. A folder whose subfolders are class names is evaluated: top-1/top-5 accuracy, per-class "
    "recall and a confusion table."
)
_PATHS_HELP = "image files, folders of images, or class trees"


def register(sub: Any, handlers: dict[str, Any]) -> None:
    from edge.cli_args import add_model_command

    p = add_model_command(sub, "classify", _HELP, _DESCRIPTION, paths_help=_PATHS_HELP)
    p.add_argument("--top-k", "-k", type=int, default=5, metavar="K", help="labels to report per image (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    handlers["classify"] = run


def run(args: argparse.Namespace) -> int:
    from edge.cli_args import finish_results, open_classifier
    from edge.evaluate import classify_paths, evaluate_tree, format_evaluation
    from edge.images import is_class_tree, list_images

    if args.top_k < 1:
        raise ShelfscanError("--top-k must be at least 1")
    clf = open_classifier(args)
    doc: dict[str, Any] = {**clf.describe(), "results": [], "evaluations": []}
    loose: list[Path] = []
    for raw in args.paths:
        path = Path(raw)
        if not path.exists():
            doc["results"].append({"path": raw, "error": f"{raw}: no such file or directory"})
        elif path.is_dir() and is_class_tree(path):
            ev, results = evaluate_tree(clf, path, args.top_k)
            doc["evaluations"].append({"path": raw, **ev.to_dict()})
            doc["results"] += [r.to_dict() for r in results]
            if not args.json:
                print(f"== {raw}\n{format_evaluation(ev)}\n")
        elif path.is_dir():
            found = list_images(path)
            if not found:
                doc["results"].append({"path": raw, "error": f"{raw}: a folder without images"})
            loose += found
        else:
            loose.append(path)
    for result in classify_paths(clf, loose, args.top_k):
        doc["results"].append(result.to_dict())
        if not args.json:
            if result.error:
                continue
            best = "   ".join(f"{p.label} {p.score:.3f}" for p in result.predictions)
            print(f"{result.path}   {best}")
    return finish_results(doc, "classify", args.json)

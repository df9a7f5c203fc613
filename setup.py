"""Builds the optional C resampler; everything else is configured in pyproject.toml.

If the extension cannot be compiled (no compiler on a device), installation continues and
edge falls back to Pillow, which gives identical pixels more slowly.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self.warn(f"edge._resample not built ({exc}); Pillow will be used for resizing")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self.warn(f"edge._resample not built ({exc}); Pillow will be used for resizing")


setup(
    ext_modules=[Extension("edge._resample", ["edge/_resample.c"], extra_compile_args=["-O3"])],
    cmdclass={"build_ext": OptionalBuildExt},
)

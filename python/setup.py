"""Builds libleash.so with the repository's Makefile and puts it inside the package.

Everything else is in pyproject.toml. LEASH_BUILD names the build directory (default "build", as `make`);
MAKE the make program. No downloads: the library's dependencies are the Debian packages scripts/deps.sh
installs.
"""
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent.parent  # the repository: python/ lives in it


class BuildPyWithLibrary(build_py):
    """The package's Python files, and libleash.so built by `make BUILD/libleash.so`."""

    def run(self):
        super().run()
        if not (ROOT / "Makefile").is_file() or not (ROOT / "src" / "api.c").is_file():
            raise SystemExit(
                f"leash: {ROOT} is not the leash repository (no Makefile or src/api.c beside python/); "
                "install from a clone of the repository: pip install --no-build-isolation ./python"
            )
        build = os.environ.get("LEASH_BUILD", "build")
        target = f"{build}/libleash.so"
        jobs = str(min(os.cpu_count() or 1, 8))
        cmd = [os.environ.get("MAKE", "make"), "-C", str(ROOT), f"-j{jobs}", f"BUILD={build}", target]
        print("leash: " + " ".join(cmd))
        subprocess.run(cmd, check=True)
        dest = Path(self.build_lib) / "leash"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / target, dest / "libleash.so")


class BinaryDistribution(Distribution):
    """A wheel for this platform (it carries a shared library), not a pure-Python one."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)

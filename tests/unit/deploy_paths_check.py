#!/usr/bin/env python3
# Every path the deploy/ files copy, install or point to exists: Dockerfile COPY sources, the files
# its build stage needs (what CMake reads, what RUN lines name), the /opt/kvmesh paths the other
# deploy files use (installed by the image), and repository paths named in deploy files and README.
#   python3 tests/unit/deploy_paths_check.py <repository root>      (prints "paths ok" or the problems)
import os
import re
import shlex
import sys

ROOT = sys.argv[1]
problems = []


def text(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def exists(path):
    return os.path.exists(os.path.join(ROOT, path))


def top_entries():
    """Top-level entries of the source tree (build trees and VCS data left out)."""
    return {e for e in os.listdir(ROOT) if not e.startswith("build") and e != ".git"}


def built_programs():
    """{"coordinator/kvmesh-serve", ...}: add_executable targets by the folder that declares them."""
    out = set()
    for d, _, files in os.walk(ROOT):
        rel = os.path.relpath(d, ROOT)
        if rel.split(os.sep)[0].startswith("build") or "CMakeLists.txt" not in files:
            continue
        for name in re.findall(r"add_executable\(\s*([\w.-]+)", text(os.path.join(rel, "CMakeLists.txt"))):
            out.add(os.path.normpath(os.path.join(rel, name)))
    return out


PROGRAMS = built_programs()
TOP = top_entries()


def check_repo_path(where, path):
    """A repository-relative path (or build/<dir>/<program>) named by a deploy file must exist."""
    if path.startswith("build/"):
        if path[len("build/"):] not in PROGRAMS:
            problems.append(f"{where}: {path} is not a program the build makes")
    elif not exists(path):
        problems.append(f"{where}: {path} does not exist in the repository")


def cmake_needs(build_tests):
    """Repository paths a configure and build reads: add_subdirectory folders, ${CMAKE_SOURCE_DIR}/...
    references and the top folders of quoted #includes in the sources built."""
    needs, todo, seen = {"CMakeLists.txt"}, ["."], set()
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        lists = text(os.path.join(d, "CMakeLists.txt"))
        for sub in re.findall(r"add_subdirectory\(\s*([\w./-]+)", lists):
            sub = os.path.normpath(os.path.join(d, sub))
            if sub == "tests" and not build_tests:
                continue
            needs.add(sub)
            todo.append(sub)
        for ref in re.findall(r"\$\{CMAKE_SOURCE_DIR\}/([\w./-]+)", lists):
            needs.add(os.path.normpath(ref))
        if d == ".":
            continue
        for cur, _, files in os.walk(os.path.join(ROOT, d)):
            for f in files:
                if f.endswith((".cpp", ".h", ".cu", ".cuh")):
                    with open(os.path.join(cur, f), encoding="utf-8", errors="replace") as src:
                        for inc in re.findall(r'#include "([\w.-]+)/', src.read()):
                            if inc in TOP:
                                needs.add(inc)
    return needs


def covered(path, copies):
    return any(path == c or path.startswith(c + "/") or c == "." for c in copies)


def dockerfile():
    """Checks the Dockerfile; returns the paths under /opt/kvmesh its image holds."""
    where = "deploy/docker/Dockerfile"
    lines = re.sub(r"\\\n", " ", text(where)).splitlines()
    stage_copies, copies, installed = {}, [], set()
    build_copies, build_tests = None, True
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word, _, rest = s.partition(" ")
        word = word.upper()
        if word == "FROM":
            args = rest.split()
            copies = list(stage_copies.get(args[0], []))  # a stage built on another keeps its files
            stage_copies[args[2] if len(args) >= 3 and args[1].upper() == "AS" else args[0]] = copies
        elif word in ("COPY", "ADD"):
            args = shlex.split(rest)
            if any(a.startswith("--from") for a in args):
                continue
            operands = [a for a in args if not a.startswith("--")]
            dest = operands[-1]
            for src in operands[:-1]:
                if "://" in src:
                    continue  # ADD from a URL
                src = os.path.normpath(src)
                check_repo_path(f"{where}: {word}", src)
                into_dir = dest.endswith("/") or len(operands) > 2
                target = os.path.normpath(os.path.join(dest, os.path.basename(src)) if into_dir else dest)
                if not dest.startswith("/"):
                    copies.append(target)  # under WORKDIR, where the build runs
                elif target.startswith("/opt/kvmesh/") and exists(src):
                    installed.add(target)
        elif word == "RUN":
            if "-DKVMESH_BUILD_TESTS=OFF" in rest:
                build_tests, build_copies = False, list(copies)
            elif re.search(r"\bcmake -S", rest):
                build_copies = list(copies)
            for cmd in re.split(r"&&|\|\||;", rest):
                run_command(where, cmd, copies, installed)
    if build_copies is None:
        problems.append(f"{where}: no RUN line configures the build (cmake -S)")
    else:
        for need in sorted(cmake_needs(build_tests)):
            if not covered(need, build_copies):
                problems.append(f"{where}: the build reads {need} but no COPY before it brings it in")
    return installed


def run_command(where, cmd, copies, installed):
    """One simple command of a RUN line: repository paths it names were copied first; install/cp
    into /opt/kvmesh adds to the image's files."""
    try:
        argv = shlex.split(cmd)
    except ValueError:
        return
    if not argv:
        return
    for token in argv[1:]:
        first = token.split("/")[0]
        if token.startswith(("-", "/", "$")) or first not in TOP and first != "build":
            continue
        if "/" not in token and not os.path.isfile(os.path.join(ROOT, token)):
            continue
        path = os.path.normpath(token)
        check_repo_path(f"{where}: RUN {argv[0]}", path)
        if not path.startswith("build/") and not covered(path, copies):
            problems.append(f"{where}: RUN {argv[0]} reads {path} before any COPY brings it in")
    if argv[0] not in ("install", "cp") or "-d" in argv:
        return
    operands = [a for a in argv[1:] if not a.startswith("-")]
    if argv[0] == "install" and "-m" in argv:
        operands.remove(argv[argv.index("-m") + 1])
    dest = operands[-1]
    for src in operands[:-1]:
        if not src.startswith("build/") and not exists(src):
            continue  # reported above; the image does not get it
        target = os.path.join(dest, os.path.basename(src.rstrip("/"))) if dest.endswith("/") else dest
        installed.add(os.path.normpath(target))
        if os.path.isdir(os.path.join(ROOT, src)):
            for cur, _, files in os.walk(os.path.join(ROOT, src)):
                for f in files:
                    rel = os.path.relpath(os.path.join(cur, f), os.path.join(ROOT, src))
                    installed.add(os.path.normpath(os.path.join(target, rel)))


def deploy_files():
    out = [".ci/run"]
    for d, _, files in os.walk(os.path.join(ROOT, "deploy")):
        out += [os.path.relpath(os.path.join(d, f), ROOT) for f in sorted(files)]
    return out


REPO_REF = re.compile(r"(?<![\w/.$~-])((?:%s)/[\w./-]*\w|README\.md|CMakeLists\.txt)(?![\w-])")
OPT_REF = re.compile(r"/opt/kvmesh/[\w./-]*\w")


def references(installed):
    """Repository paths named in deploy files (and deploy/ paths named in README.md) exist; the
    /opt/kvmesh paths the unit, manifests and scripts use are files the image installs."""
    tops = "|".join(re.escape(t) for t in sorted(TOP) if os.path.isdir(os.path.join(ROOT, t)))
    repo_ref = re.compile(REPO_REF.pattern % tops)
    for f in deploy_files() + ["README.md"]:
        for n, line in enumerate(text(f).splitlines(), 1):
            for m in repo_ref.finditer(line):
                if f == "README.md" and not m.group(1).startswith("deploy/"):
                    continue
                check_repo_path(f"{f}:{n}", m.group(1))
            if f == "deploy/docker/Dockerfile":
                continue
            for m in OPT_REF.finditer(line):
                path = m.group(0)
                if path not in installed and not any(i.startswith(path + "/") for i in installed):
                    problems.append(f"{f}:{n}: {path} is not installed by deploy/docker/Dockerfile")


references(dockerfile())
for p in problems:
    print(p)
print("paths ok" if not problems else f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)

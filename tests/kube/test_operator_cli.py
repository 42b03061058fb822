"""``afs-continuous operator``'s settings: flags, the environment, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from afs.continuous.kube import operator


@pytest.mark.parametrize(
    ("argv", "environment", "message"),
    [
        ([], {}, "give --namespace NS or --all-namespaces"),
        (["--namespace", "Bad_NS"], {}, "argument --namespace: not a namespace name: 'Bad_NS'"),
        (["--all-namespaces", "--metrics-port", "70000"], {},
         "argument --metrics-port: must be a port from 0 to 65,535, got '70000'"),
        (["--all-namespaces", "--poll-seconds", "0"], {},
         "argument --poll-seconds: must be a number of seconds more than 0 to"),
        (["--all-namespaces"], {"AFS_METRICS_PORT": "abc"},
         "AFS_METRICS_PORT: must be a port from 0 to 65,535, got 'abc'"),
        (["--all-namespaces"], {"AFS_OPERATOR_POLL_SECONDS": "nan"},
         "AFS_OPERATOR_POLL_SECONDS: must be a number of seconds more than 0"),
        (["--all-namespaces", "--pod-security-level", "lax"], {},
         "argument --pod-security-level: must be one of restricted, baseline, privileged, "
         "got 'lax'"),
        (["--all-namespaces"], {"AFS_POD_SECURITY_LEVEL": "off"},
         "AFS_POD_SECURITY_LEVEL: must be one of restricted, baseline, privileged, got 'off'"),
        (["--all-namespaces"], {"AFS_TRAINING_POLICY": "off"},
         "AFS_POD_SECURITY_LEVEL: must be one of restricted, baseline, privileged, got 'off'"),
        ([], {"AFS_OPERATOR_NAMESPACE": "ml/prod"},
         "AFS_OPERATOR_NAMESPACE: not a namespace name: 'ml/prod'"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_by_name(
    argv: list[str],
    environment: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        operator.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_settings_come_from_the_environment_and_flags_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AFS_OPERATOR_NAMESPACE", "ml")
    monkeypatch.setenv("AFS_METRICS_PORT", "0")
    monkeypatch.setenv("AFS_OPERATOR_POLL_SECONDS", "5")
    args = operator.build_parser().parse_args(["--poll-seconds", "2.5"])
    assert (args.namespace, args.metrics_port, args.poll_seconds) == ("ml", 0, 2.5)
    assert args.health_port == 8080


def test_no_cluster_to_talk_to_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No kubeconfig, and not in a pod (no service-account environment)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert operator.main(["--namespace", "ml", "--metrics-port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no cluster to talk to" in err and "KUBECONFIG" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "environment", "level"),
    [
        ([], {}, "restricted"),
        ([], {"AFS_POD_SECURITY_LEVEL": "baseline"}, "baseline"),
        ([], {"AFS_TRAINING_POLICY": "permissive"}, "privileged"),
        ([], {"AFS_TRAINING_POLICY": "permissive", "AFS_POD_SECURITY_LEVEL": "baseline"},
         "baseline"),
        (["--training-policy", "restricted"], {"AFS_POD_SECURITY_LEVEL": "privileged"},
         "restricted"),
        (["--pod-security-level", "privileged"], {}, "privileged"),
    ],
    ids=["default", "environment", "former-variable", "new-variable-wins", "former-flag",
         "flag"],
)  # fmt: skip
def test_the_pod_security_level_is_restricted_unless_named(
    argv: list[str], environment: dict[str, str], level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AFS_POD_SECURITY_LEVEL", "AFS_TRAINING_POLICY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    args = operator.build_parser().parse_args(["--all-namespaces", *argv])
    assert args.pod_security_level == level


def test_help_shows_defaults_only_where_there_is_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        operator.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # as read, not as wrapped
    assert "default: None" not in text and "default: False" not in text
    assert "(AFS_POD_SECURITY_LEVEL) (default: restricted)" in text

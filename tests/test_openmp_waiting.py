"""The command line sets OpenMP's short spinning before torch loads, unless the user chose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from idinvert.core.runtime import SHORT_SPINCOUNT, use_short_openmp_spinning

# Runs `idinvert sample` in a fresh interpreter and records GOMP_SPINCOUNT at the moment torch
# is first imported (when torch loads OpenMP, which reads its environment then).
CHILD = textwrap.dedent(
    """
    import json, os, sys

    seen = {}

    class WatchTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" and "at_import" not in seen:
                seen["at_import"] = os.environ.get("GOMP_SPINCOUNT")
            return None

    sys.meta_path.insert(0, WatchTorch())
    from idinvert.cli.main import main

    try:
        main(["sample", "--model", sys.argv[1], "--n", "1", "--out", sys.argv[2]])
    except SystemExit as exc:
        seen["exit"] = exc.code
    seen["torch_loaded"] = "torch" in sys.modules
    print(json.dumps(seen))
    """
)


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ({}, SHORT_SPINCOUNT),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, None),  # a chosen policy is not overridden
        ({"GOMP_SPINCOUNT": "123"}, "123"),
    ],
)
def test_cli_sets_short_spinning_before_torch_loads(tmp_path, tiny_model_dir, preset, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(preset)
    out = tmp_path / "samples"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_model_dir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen.get("exit") in (None, 0), result.stderr
    assert seen["torch_loaded"] and (out / "000000.png").is_file()
    assert seen["at_import"] == expected


def test_settings_the_user_chose_are_kept():
    env: dict[str, str] = {}
    use_short_openmp_spinning(env)
    assert env == {"GOMP_SPINCOUNT": SHORT_SPINCOUNT}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"}):
        env = dict(chosen)
        use_short_openmp_spinning(env)
        assert env == chosen
    # torch is loaded in this process already: too late for its OpenMP, though children inherit
    assert "torch" in sys.modules and use_short_openmp_spinning({}) is False

"""Security round 4, against the served studio on a shared Space: YAML a user types, request
sizes, cross-session reads through Gradio's file routes, and markup in what the studio
renders. Each test is one hole that was open, or one attack that must keep failing; what was
already covered lives in test_security_*.py, test_adversarial.py and test_bad_input_sweep.py."""

from __future__ import annotations

import pytest

from tests.helpers.rest import rest_client, session


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec4")
    with rest_client(root, per_owner=4) as client:
        yield client, root


def _laughs(levels: int = 8) -> list[str]:
    """YAML lines of a "billion laughs": level i lists level i-1 ten times (10^levels values
    from ~0.5 KB of text)."""
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return lines


# --- YAML a user sends ------------------------------------------------------------------------


def test_a_yaml_alias_bomb_in_a_tune_space_is_refused_at_submit(server):
    """The space's 'low' is 10^8 numbers by aliases: it was parsed, then printed whole in the
    error (17 s and 0.8 GB in the server process; a ninth level is 10x that)."""
    client, _ = server
    space = "lr:\n  type: float\n  high: 1\n  low:\n" + "\n".join("    " + x for x in _laughs())
    r = client.post("/api/jobs", headers=session(client),
                    json={"kind": "tune", "config": {"config": {"space": space}}})
    assert r.status_code == 422, r.text
    assert "'space' parameter must be valid YAML (its aliases (*name) expand it past" \
        in r.json()["detail"]
    assert len(r.text) < 2000


@pytest.mark.parametrize("text, why", [
    ("\n".join(_laughs()) + "\nsteps: [quantize]\nname: *a7\n", "expand it past 1,000,000"),
    ("steps: &s [quantize, *s]\n", "refers to the value that contains it"),
    ("name: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply to read"),
])
def test_a_recipe_bomb_is_one_clear_error(text, why):
    """The Auto tab's recipe box: an alias bomb, an alias inside itself, deep nesting (that
    was a bare RecursionError)."""
    from core.errors import InvalidParameterError
    from core.recipes import Recipe

    with pytest.raises(InvalidParameterError, match="'recipe' parameter must be valid YAML") \
            as err:
        Recipe.from_yaml(text, allow_paths=False)
    assert why in str(err.value)


def test_anchors_and_merge_keys_within_reason_still_load():
    from core.config import load_yaml

    assert load_yaml("base: &b {n: 2, m: x}\nother: {<<: *b, n: 3}\nl: [*b, *b]\n") == {
        "base": {"n": 2, "m": "x"}, "other": {"n": 3, "m": "x"},
        "l": [{"n": 2, "m": "x"}, {"n": 2, "m": "x"}]}

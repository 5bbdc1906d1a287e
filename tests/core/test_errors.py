"""User-facing errors: exit codes and the --json form."""

from npuc.core.errors import InvalidInputError, NpucError, SimulatorFault, UnsupportedError


class _Node:
    def to_json(self) -> dict[str, str]:
        return {"node_name": "n0", "op_type": "Det"}


def test_exit_codes_are_distinct_per_kind() -> None:
    codes = [cls.exit_code for cls in (InvalidInputError, UnsupportedError, SimulatorFault)]
    assert codes == [3, 4, 5]
    assert issubclass(UnsupportedError, NpucError)


def test_unsupported_error_json_lists_nodes() -> None:
    err = UnsupportedError("m.onnx: 2 node(s) cannot be compiled", nodes=[_Node(), "raw text"])
    data = err.to_json()
    assert data["exit_code"] == 4
    assert data["nodes"] == [{"node_name": "n0", "op_type": "Det"}, "raw text"]


def test_json_has_no_nodes_key_without_nodes() -> None:
    assert "nodes" not in UnsupportedError("x").to_json()
    assert InvalidInputError("bad", hint="fix it").to_json()["hint"] == "fix it"

"""CLI subcommands, one module per stage, each with `register(subparsers)`."""


def parse_weights(text: str) -> list[float]:
    """A `--weights 0.7,0.2,0.1` argument as floats (checked against objectives later)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--weights must be comma-separated numbers, got {text!r}") from exc

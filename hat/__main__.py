"""``python -m hat`` = the ``hat`` command."""
from hat.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m hat`` = the ``hat`` command."""
from hat.cli import run

if __name__ == "__main__":
    run()

from hat.cli import run

run()

from imgseal.cli.main import run

run()

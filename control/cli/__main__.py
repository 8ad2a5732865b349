from control.cli.main import main

main()

from taskfleet_cli.main import main

main()

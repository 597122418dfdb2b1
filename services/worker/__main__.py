from .supervisor.main import main

main()

from nertz_executor.app import main

main()

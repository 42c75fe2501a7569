from nertz_validator.app import main

main()

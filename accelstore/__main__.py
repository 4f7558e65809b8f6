from accelstore.cli import main

main()

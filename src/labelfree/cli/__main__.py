from labelfree.cli import main

main()

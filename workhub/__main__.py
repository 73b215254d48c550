from workhub.cli import main

main()

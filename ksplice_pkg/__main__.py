from ksplice_pkg.cli import main

main()

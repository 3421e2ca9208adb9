from cascade_tui.cli import main

main()

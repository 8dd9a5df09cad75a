from hpcwrap.cli import main

raise SystemExit(main())

from cto_harness.cli import main

raise SystemExit(main())

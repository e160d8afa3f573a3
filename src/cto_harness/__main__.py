from cto_harness.cli.entry import main

raise SystemExit(main())

from modelcore.cli import main

raise SystemExit(main())

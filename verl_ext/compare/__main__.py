from verl_ext.compare.cli import main

raise SystemExit(main())

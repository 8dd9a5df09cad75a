import os

from hpcwrap import earlysignals

earlysignals.catch(os.environ)  # first: a warning during start-up is noted, not dropped

from hpcwrap.cli import main  # noqa: E402

raise SystemExit(main())

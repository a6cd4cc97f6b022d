pytest_plugins = ["xpuperf.plugin"]

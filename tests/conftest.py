pytest_plugins = ["sessionkv.contract_tests.pytest_plugin"]

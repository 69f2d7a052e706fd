"""tests/conftest.py makes ``ansible.module_utils.jetpolicy_*`` importable for this suite."""

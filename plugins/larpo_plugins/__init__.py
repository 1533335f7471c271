"""larpo's built-in plugins, loaded through the ``larpo`` entry-point group like any third party's."""

"""The annotator's pages: Django templates and a little JavaScript over annotation's API."""

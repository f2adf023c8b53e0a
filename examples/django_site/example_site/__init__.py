"""A minimal Django project around the Skopos app: no database, no auth, one page."""

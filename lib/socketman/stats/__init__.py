# Device stats (PROTOCOL 7): one parser module per source, collect.py runs
# the commands in the background, doc.py builds the document.

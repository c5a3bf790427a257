# The stats pipeline (PROTOCOL 5 and 7): collect.py runs the commands in the
# background and the parser modules (system, wan, wifi, survey, dhcp) turn
# their output into document parts; doc.py builds the document; spool.py,
# gz.py and upload.py take it to the server; pipeline.py drives them.

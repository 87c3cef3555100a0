"""Bringing a track in from a link: the download itself, in the worker of the imports queue.

proxy: the forwarding proxy every request of a download goes through, where the address rule is
applied as each connection is made; fetch: direct links to audio files; sites: pages of the sites
yt-dlp understands; failures: what can go wrong, as kinds the site turns into sentences.
No Django here (jobs/background/imports.py runs it with the site's settings).
"""

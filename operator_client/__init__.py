"""The client: job spec -> Volcano manifests, rank table, submit and manage jobs.

Never imports MindSpore; imports kubernetes lazily so `render` works without it configured.
"""

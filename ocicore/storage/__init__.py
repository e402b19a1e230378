"""Byte storage behind one small Protocol: objects by key, and appendable uploads.

Drivers know nothing of OCI: keys are plain slash-separated names, uploads are opaque ids.
:mod:`ocicore.blobstore` builds the content-addressed store (digests, verification) on top.
"""

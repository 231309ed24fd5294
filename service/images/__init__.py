"""Images in and out: bounded decoding of uploads, encoding of answers (PNG, JPEG, WebP, npy, 16-bit
PNG), the metadata carried through, animations, output sizes and resizing, and the provenance
stamped into every file.

The wing at the bottom of the service: it imports only `contract`, numpy and Pillow.
"""

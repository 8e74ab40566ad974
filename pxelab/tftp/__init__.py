"""TFTP: a read-only server for firmware and boot loaders (codec, session, asyncio transport)."""

"""Ferry's shared service runtime. No business logic lives here."""

package server

// quotaAuthzCases are the client-quota APIs' rows of the authorization
// matrix.
func quotaAuthzCases(caf int16) []authzCase { return nil }

package sigv4

// Exported for the external tests (package sigv4_test), which use pkg/receive
// and pkg/awsemu; both import this package.
var (
	IsolateAWSEnv  = isolateAWSEnv
	AssertNoSecret = assertNoSecrets
)

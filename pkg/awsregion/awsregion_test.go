package awsregion

import "testing"

func TestValid(t *testing.T) {
	for name, want := range map[string]bool{
		"us-east-1": true, "eu-central-2": true, "us-gov-west-1": true, "cn-north-1": true,
		"ap-southeast-7": true, "mx-central-1": true, "us-isob-east-1": true, "eusc-de-east-1": true,
		"ca-west-1": true, "il-central-1": true,
		"": false, "us-east": false, "us-east-1a": false, "US-EAST-1": false, "useast1": false,
		"us_east_1": false, "us-east-1 ": false, "global": false, "aws-global": false, "us-east-123": false,
		"u-east-1": false, "europe-west-1": false,
	} {
		if got := Valid(name); got != want {
			t.Errorf("Valid(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestFromURL(t *testing.T) {
	for url, want := range map[string]string{
		"https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1/api/v1/remote_write": "us-west-2",
		"https://aps-workspaces-fips.us-gov-west-1.amazonaws.com/workspaces/ws-1/":           "us-gov-west-1",
		"https://abc123.execute-api.eu-west-1.amazonaws.com/prod/metrics":                    "eu-west-1",
		"https://aps-workspaces.cn-north-1.amazonaws.com.cn/workspaces/ws-1":                 "cn-north-1",
		"https://APS-WORKSPACES.US-EAST-1.AMAZONAWS.COM:443/x":                               "us-east-1",
		"https://sts.amazonaws.com/":                                                         "",
		"https://aps-workspaces.example.com/workspaces/ws-1":                                 "",
		"http://127.0.0.1:9095/workspaces/ws-1":                                              "",
		"":                                                                                   "",
		"::not a url":                                                                        "",
	} {
		if got := FromURL(url); got != want {
			t.Errorf("FromURL(%q) = %q, want %q", url, got, want)
		}
	}
}

func TestIsAMP(t *testing.T) {
	for url, want := range map[string]bool{
		"https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write": true,
		"https://aps-workspaces-fips.us-gov-west-1.amazonaws.com/workspaces/ws-1":            true,
		"https://abc123.execute-api.eu-west-1.amazonaws.com/prod":                            false,
		"http://127.0.0.1:9095/workspaces/ws-1/api/v1/remote_write":                          false,
		"https://aps-workspaces.example.com/x":                                               false,
	} {
		if got := IsAMP(url); got != want {
			t.Errorf("IsAMP(%q) = %v, want %v", url, got, want)
		}
	}
}

//go:build !remove_all_sd || enable_aws_sd

package main

import _ "github.com/prometheus/prometheus/discovery/aws" // ec2, ecs, lightsail, elasticache, msk, rds

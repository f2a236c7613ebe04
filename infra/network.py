"""The example's network: a VPC with private subnets only, and the endpoints the function needs.

No internet gateway and no NAT: the function reaches S3 through a gateway endpoint on
the route table and Secrets Manager through an interface endpoint. Without the S3
endpoint, S3 calls from the function hang until it times out (the handler says so).
"""

from __future__ import annotations

import ipaddress

from cdktf import Fn, TerraformResource
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_availability_zones import (
    DataAwsAvailabilityZones,
    DataAwsAvailabilityZonesFilter,
)
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from cdktf_cdktf_provider_aws.vpc_endpoint import VpcEndpoint
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from . import policies
from .encryption import Account

__all__ = ["Network"]

AVAILABILITY_ZONES = 2


class Network(Construct):
    """VPC, two private subnets in two AZs, S3 gateway and Secrets Manager interface endpoints (and
    Step Functions', for a fleet), flow logs, and a default security group that allows nothing.

    Attributes: ``vpc_id``, ``cidr``, ``subnet_ids``, ``s3_prefix_list_id``, ``endpoints`` and
    ``run_dependencies``: what a function in the subnets needs before it runs (the route table
    associations, without which the subnets use the VPC's main table and have no S3 route; the
    endpoints; the rules of the endpoints' security group).
    """

    def __init__(  # noqa: PLR0913  a cdktf construct: (scope, id), then keyword-only props, as the provider's resources take theirs
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        cidr: str,
        region: str,
        account: Account,
        kms_key_arn: str,
        log_retention_days: int,
        step_functions: bool = False,
    ) -> None:
        super().__init__(scope, id)
        # Only the region's own zones: Local and Wavelength Zones are opt-in, and RDS, the
        # interface endpoints and Lambda are not offered in most of them.
        zones = DataAwsAvailabilityZones(
            self,
            "zones",
            state="available",
            filter=[DataAwsAvailabilityZonesFilter(name="opt-in-status", values=["opt-in-not-required"])],
        )
        vpc = Vpc(
            self,
            "vpc",
            cidr_block=cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # the interface endpoint's private DNS needs both
            tags={"Name": name},
        )
        DefaultSecurityGroup(self, "default-sg", vpc_id=vpc.id, tags={"Name": f"{name}-default-deny"})

        blocks = list(ipaddress.ip_network(cidr).subnets(new_prefix=min(ipaddress.ip_network(cidr).prefixlen + 4, 28)))
        routes = RouteTable(self, "private-routes", vpc_id=vpc.id, tags={"Name": f"{name}-private"})
        subnets = []
        associations = []
        for index in range(AVAILABILITY_ZONES):
            subnet = Subnet(
                self,
                f"private-{index}",
                vpc_id=vpc.id,
                cidr_block=str(blocks[index]),
                availability_zone=Fn.element(zones.names, index),
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-private-{index}"},
            )
            associations.append(
                RouteTableAssociation(self, f"private-{index}-routes", subnet_id=subnet.id, route_table_id=routes.id)
            )
            subnets.append(subnet)

        s3 = VpcEndpoint(
            self,
            "s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[routes.id],
            tags={"Name": f"{name}-s3"},
        )
        endpoint_sg = SecurityGroup(
            self,
            "endpoint-sg",
            name=f"{name}-endpoints",
            description="Interface endpoints: HTTPS from inside the VPC",
            vpc_id=vpc.id,
        )
        endpoint_https = VpcSecurityGroupIngressRule(
            self,
            "endpoint-https-in",
            security_group_id=endpoint_sg.id,
            description="HTTPS from the VPC",
            cidr_ipv4=cidr,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
        )
        # Secrets Manager for the database secrets; Step Functions for a fleet's function, which
        # starts the fleet's state machine and follows its executions.
        interfaces = [
            VpcEndpoint(
                self,
                f"{service}-endpoint",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[subnet.id for subnet in subnets],
                security_group_ids=[endpoint_sg.id],
                tags={"Name": f"{name}-{service}"},
            )
            for service in ("secretsmanager", *(("states",) if step_functions else ()))
        ]

        flow_logs = CloudwatchLogGroup(
            self,
            "flow-logs",
            name=f"/vpc/{name}/flow-logs",
            retention_in_days=log_retention_days,
            kms_key_id=kms_key_arn,
        )
        flow_role = IamRole(
            self,
            "flow-logs-role",
            name=f"{name}-flow-logs",
            assume_role_policy=policies.assume_role("vpc-flow-logs.amazonaws.com", account_id=account.account_id),
        )
        flow_policy = IamRolePolicy(
            self, "flow-logs-policy", role=flow_role.id, policy=policies.log_delivery(flow_logs.arn)
        )
        FlowLog(
            self,
            "flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=flow_logs.arn,
            iam_role_arn=flow_role.arn,
            max_aggregation_interval=600,
            # The flow log service checks the role when it creates the log.
            depends_on=[flow_policy],
        )

        self.vpc_id = vpc.id
        self.cidr = cidr
        self.subnet_ids = [subnet.id for subnet in subnets]
        self.s3_prefix_list_id = s3.prefix_list_id
        self.endpoints = [s3, *interfaces]
        self.run_dependencies: list[TerraformResource] = [*associations, s3, *interfaces, endpoint_https]

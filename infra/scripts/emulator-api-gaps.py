#!/usr/bin/env python3
"""Applies what an emulator does not read from the API's definition, then deploys the stage
again so it takes effect. MiniStack ignores two of the extensions SAM writes there:
- `x-amazon-apigateway-gateway-responses` (the `GatewayResponses` of an `AWS::Serverless::Api`):
  put with PutGatewayResponse;
- `x-amazon-apigateway-any-method` (an `Api` event with `Method: any`): put as an ANY method with
  the api function's proxy integration, the key required as on the API's own routes.

Usage: emulator-api-gaps.py <endpoint> <rest api id> <stage>

Both are read from infra/template.yaml as they are, so the deployed e2e run checks the template's
own response templates and catch-all routes through the emulator's gateway.
"""

import os
import sys

import boto3
import yaml

TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "template.yaml")


class TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (`!Ref`, `!Sub`, ...) as plain values."""


TemplateLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node)
    if isinstance(node, yaml.ScalarNode)
    else None
)


def main(endpoint: str, api_id: str, stage: str) -> None:
    with open(TEMPLATE, encoding="utf-8") as file:
        template = yaml.load(file, Loader=TemplateLoader)
    responses = template["Resources"]["Api"]["Properties"]["GatewayResponses"]
    client = boto3.client(
        "apigateway",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    apply_gateway_responses(client, api_id, responses)
    any_paths = [
        event["Properties"]["Path"]
        for event in template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
        if event["Type"] == "Api" and event["Properties"]["Method"].lower() == "any"
    ]
    apply_any_methods(client, api_id, any_paths)
    client.create_deployment(restApiId=api_id, stageName=stage)
    print(
        f"emulator: {len(responses)} gateway responses and {len(any_paths)} ANY methods "
        f"applied to {api_id}/{stage}"
    )


def apply_gateway_responses(client, api_id, responses):
    for response_type, response in responses.items():
        arguments = {
            "restApiId": api_id,
            "responseType": response_type,
            "responseTemplates": response.get("ResponseTemplates", {}),
        }
        if "StatusCode" in response:
            arguments["statusCode"] = str(response["StatusCode"])
        client.put_gateway_response(**arguments)


def apply_any_methods(client, api_id, paths):
    resources = {
        resource["path"]: resource
        for page in client.get_paginator("get_resources").paginate(restApiId=api_id)
        for resource in page["items"]
    }
    # Every route is the api function's proxy integration, keyed alike: copy GET /tasks'.
    tasks = resources["/tasks"]["id"]
    integration = client.get_integration(restApiId=api_id, resourceId=tasks, httpMethod="GET")
    key_required = client.get_method(restApiId=api_id, resourceId=tasks, httpMethod="GET")[
        "apiKeyRequired"
    ]
    for path in paths:
        if path not in resources:
            parent, _, part = path.rpartition("/")
            resources[path] = client.create_resource(
                restApiId=api_id, parentId=resources[parent or "/"]["id"], pathPart=part
            )
        resource = resources[path]["id"]
        client.put_method(
            restApiId=api_id,
            resourceId=resource,
            httpMethod="ANY",
            authorizationType="NONE",
            apiKeyRequired=key_required,
        )
        client.put_integration(
            restApiId=api_id,
            resourceId=resource,
            httpMethod="ANY",
            type="AWS_PROXY",
            integrationHttpMethod="POST",
            uri=integration["uri"],
        )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])

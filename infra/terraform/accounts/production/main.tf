# Root module for the production account: one DigitalOcean team and one Cloudflare zone. Another
# account gets its own directory beside this one, with its own state key and credentials.
#
#   terraform init -backend-config=backend.hcl
#   terraform apply

terraform {
  required_version = ">= 1.6"

  # State lives in a Cloudflare R2 bucket through the S3 API; backend.hcl (from backend.hcl.example)
  # names the bucket, key and endpoint. Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
  # set to an R2 API token.
  backend "s3" {}

  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.60"
    }
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = "~> 5.0"
    }
  }
}

provider "digitalocean" {
  token = var.digitalocean_token
}

provider "cloudflare" {
  api_token = var.cloudflare_api_token
}

locals {
  # The same list that the Caddyfile and the gateway's TRUSTED_PROXIES use.
  cloudflare_ranges_file = "${path.module}/../../../cloudflare/ip-ranges.txt"
  cloudflare_cidrs = [
    for line in split("\n", file(local.cloudflare_ranges_file)) : trimspace(line)
    if trimspace(line) != "" && !startswith(trimspace(line), "#")
  ]
}

module "nadzu" {
  source = "../../modules/nadzu-host"

  name                     = "nadzu-production"
  region                   = var.region
  droplet_size             = var.droplet_size
  ssh_key_fingerprints     = var.ssh_key_fingerprints
  downloads_volume_size_gb = var.downloads_volume_size_gb
  admin_cidrs              = var.admin_cidrs
  cloudflare_cidrs         = local.cloudflare_cidrs
  cloudflare_zone_id       = var.cloudflare_zone_id
  domain                   = var.domain
  acme_email               = var.acme_email
  repo_url                 = var.repo_url
  nadzu_version            = var.nadzu_version
  image_prefix             = var.image_prefix
}

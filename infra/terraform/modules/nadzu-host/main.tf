# One droplet running the compose stack, a block volume for finished downloads, a firewall that lets
# only Cloudflare reach HTTP/HTTPS and only the admin addresses reach SSH, and the proxied DNS records.

locals {
  downloads_mount = "/mnt/nadzu-downloads"
  volume_name     = "${var.name}-downloads"
}

resource "digitalocean_volume" "downloads" {
  name                    = local.volume_name
  region                  = var.region
  size                    = var.downloads_volume_size_gb
  initial_filesystem_type = "ext4"
  description             = "Nadzu finished downloads"
}

resource "digitalocean_droplet" "host" {
  name       = var.name
  region     = var.region
  size       = var.droplet_size
  image      = var.droplet_image
  ssh_keys   = var.ssh_key_fingerprints
  ipv6       = true
  monitoring = true

  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    domain            = var.domain
    acme_email        = var.acme_email
    admin_allow_cidrs = join(" ", var.admin_cidrs)
    repo_url          = var.repo_url
    nadzu_version     = var.nadzu_version
    image_prefix      = var.image_prefix
    volume_name       = local.volume_name
    downloads_mount   = local.downloads_mount
  })

  # A changed cloud-init template applies to a new droplet only; upgrades go through docs/deploy.md.
  lifecycle {
    ignore_changes = [user_data]
  }
}

resource "digitalocean_volume_attachment" "downloads" {
  droplet_id = digitalocean_droplet.host.id
  volume_id  = digitalocean_volume.downloads.id
}

resource "digitalocean_firewall" "host" {
  name        = "${var.name}-firewall"
  droplet_ids = [digitalocean_droplet.host.id]

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.admin_cidrs
  }

  inbound_rule {
    protocol         = "tcp"
    port_range       = "80"
    source_addresses = var.cloudflare_cidrs
  }

  inbound_rule {
    protocol         = "tcp"
    port_range       = "443"
    source_addresses = var.cloudflare_cidrs
  }

  inbound_rule {
    protocol         = "icmp"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
}

resource "cloudflare_dns_record" "ipv4" {
  zone_id = var.cloudflare_zone_id
  name    = var.domain
  type    = "A"
  content = digitalocean_droplet.host.ipv4_address
  proxied = true
  ttl     = 1
  comment = "Nadzu API, managed by Terraform"
}

resource "cloudflare_dns_record" "ipv6" {
  zone_id = var.cloudflare_zone_id
  name    = var.domain
  type    = "AAAA"
  content = digitalocean_droplet.host.ipv6_address
  proxied = true
  ttl     = 1
  comment = "Nadzu API, managed by Terraform"
}

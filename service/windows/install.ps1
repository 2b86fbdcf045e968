<#
.SYNOPSIS
  Installs the Lifeboat agent as a Windows service run by WinSW, or removes it (-Uninstall).
.DESCRIPTION
  Downloads nothing. Get WinSW.exe (v2 or v3, https://github.com/winsw/winsw/releases), place it
  beside this script or pass -WinSW PATH, and run from an elevated PowerShell in a Lifeboat
  checkout where `npm ci` has run. The script copies WinSW to lifeboat-service.exe here, fills
  lifeboat.xml into lifeboat-service.xml (WinSW reads the .xml named like its .exe), creates the
  config from config.example.toml when there is none, then installs and starts the service.
  -Uninstall stops and removes the service and keeps the config and the state directory.
#>
[CmdletBinding()]
param(
  [string]$WinSW = (Join-Path $PSScriptRoot 'WinSW.exe'),
  [string]$Config = 'C:\ProgramData\Lifeboat\lifeboat.toml',
  [switch]$NoStart,
  [switch]$Uninstall
)
$ErrorActionPreference = 'Stop'

$installDir = (Resolve-Path (Join-Path $PSScriptRoot '..\..')).Path
$stateDir = 'C:\ProgramData\Lifeboat'
$service = Join-Path $PSScriptRoot 'lifeboat-service.exe'
$xml = Join-Path $PSScriptRoot 'lifeboat-service.xml'

function Invoke-WinSW([string]$Verb) {
  & $service $Verb
  if ($LASTEXITCODE -ne 0) { throw "lifeboat-service.exe $Verb failed (exit $LASTEXITCODE)" }
}

if ($Uninstall) {
  if (-not (Test-Path $service)) { Write-Host "The Lifeboat service is not installed (no $service)."; exit 0 }
  & $service stop  # fails harmlessly when it is already stopped
  Invoke-WinSW uninstall
  Remove-Item -Force $service, $xml
  Write-Host "Removed the Lifeboat service; kept $Config and $stateDir."
  exit 0
}

if (-not (Test-Path $WinSW)) { throw "WinSW not found at ${WinSW}: place WinSW.exe beside this script or pass -WinSW PATH" }
foreach ($f in (Join-Path $installDir 'node_modules\node\bin\node.exe'), (Join-Path $installDir 'dist\cli\main.js')) {
  if (-not (Test-Path $f)) { throw "$f is missing: run 'npm ci' in $installDir first" }
}

# The state directory holds the repository, catalog and keys: SYSTEM and Administrators only
# (by SID, so it works in every display language), not the Users ProgramData lets write.
New-Item -ItemType Directory -Force -Path $stateDir | Out-Null
icacls $stateDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls $stateDir failed (exit $LASTEXITCODE)" }

if (Test-Path $Config) {
  Write-Host "Keeping the existing $Config."
} else {
  New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Config) | Out-Null
  Copy-Item (Join-Path $installDir 'config.example.toml') $Config
  Write-Host "Created $Config from config.example.toml."
}

$text = Get-Content -Raw (Join-Path $PSScriptRoot 'lifeboat.xml')
$text = $text.Replace('@INSTALL_DIR@', [Security.SecurityElement]::Escape($installDir))
$text = $text.Replace('@CONFIG@', [Security.SecurityElement]::Escape($Config))
$text = $text.Replace('@STATE_DIR@', [Security.SecurityElement]::Escape($stateDir))
Set-Content -Encoding UTF8 -Path $xml -Value $text
Copy-Item -Force $WinSW $service

Invoke-WinSW install
if ($NoStart) {
  Write-Host "Installed the Lifeboat service; start it with: $service start"
} else {
  Invoke-WinSW start
  Write-Host "Installed and started the Lifeboat service (logs in $stateDir\logs)."
}

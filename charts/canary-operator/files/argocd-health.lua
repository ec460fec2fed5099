-- Argo CD health check for scholarship.dev/CanaryPromotion.
-- Install it as resource.customizations.health.scholarship.dev_CanaryPromotion in argocd-cm
-- (docs/argocd.md). Every phase the operator writes maps to a health status; only an object
-- the operator has never seen, or a phase this script does not know, is Progressing/Unknown.
local hs = {}

local function describe(status, fallback)
  local parts = {}
  if status.stepLabel ~= nil and status.stepLabel ~= "" then
    table.insert(parts, "step " .. status.stepLabel)
  end
  if status.weight ~= nil then
    table.insert(parts, "weight " .. tostring(status.weight) .. "%")
  end
  if status.gatesSummary ~= nil and status.gatesSummary ~= "" then
    table.insert(parts, "gates " .. status.gatesSummary)
  end
  local message = status.message
  if message == nil or message == "" then
    message = fallback
  end
  if #parts > 0 then
    return message .. " (" .. table.concat(parts, ", ") .. ")"
  end
  return message
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for canary-operator to pick up the promotion"
  return hs
end

-- A Deployment, Ingress or HTTPRoute the promotion names is missing or unusable: the operator
-- cannot act until it exists, whatever the phase says.
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "ReferencesResolved" and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message or "a referenced object is missing"
      return hs
    end
  end
end

-- A spec change the operator has not acted on yet says nothing about the new spec's health.
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for canary-operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
if phase == "Pending" or phase == "Progressing" or phase == "Promoting" then
  hs.status = "Progressing"
  hs.message = describe(status, phase)
elseif phase == "Paused" then
  -- Paused by spec.paused or waiting at a requireApproval step: a person must act, as with an
  -- Argo Rollout paused at a step.
  hs.status = "Suspended"
  hs.message = describe(status, "Paused")
elseif phase == "Promoted" or phase == "Watching" then
  -- Watching: promoted, the rollback criteria still judged on the stable track. Healthy, so
  -- sync waves and dependent Applications do not wait out the watch.
  hs.status = "Healthy"
  hs.message = describe(status, phase)
elseif phase == "RollingBack" or phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(status, phase)
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs

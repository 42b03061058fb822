-- Argo CD health of a LearningLoop (continuous.afs.dev): its phase and Ready condition.
-- Watching, Training and Testing are a loop doing its work: Healthy. Suspended is
-- Suspended; a Failed phase or Ready=False (invalid spec, database or API unreachable)
-- is Degraded; a loop the operator has not caught up with is Progressing.
local hs = {}
local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then return c end
    end
  end
  return nil
end
local function describe(c, fallback)
  if c == nil then return fallback end
  if c.message ~= nil and c.message ~= "" then return c.reason .. ": " .. c.message end
  return c.reason
end
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see generation " .. generation
  return hs
end
local ready = condition("Ready")
local phase = obj.status.phase
if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
elseif phase == "Failed" or (ready ~= nil and ready.status == "False") then
  hs.status = "Degraded"
  hs.message = describe(ready, "Failed")
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = describe(ready, "Pending")
else
  hs.status = "Healthy"
  hs.message = phase .. (ready ~= nil and (" (" .. describe(ready, "") .. ")") or "")
end
return hs
